// imganalyzer serve: the only script. Pages work without it; it adds keys, endless
// scrolling, the map's drag-to-select and the people page's selection count.
(function () {
  "use strict";
  var body = document.body;

  // Viewer: ← and → through the result set, i toggles the info panel, Esc goes back.
  if (body.classList.contains("viewer")) {
    var wide = window.matchMedia("(min-width: 701px)").matches;
    var stored = localStorage.getItem("imganalyzer-info");
    body.classList.toggle("info-open", stored === null ? wide : stored === "1");
    var toggleInfo = function () {
      var open = !body.classList.contains("info-open");
      body.classList.toggle("info-open", open);
      localStorage.setItem("imganalyzer-info", open ? "1" : "0");
    };
    document.getElementById("toggle-info").addEventListener("click", toggleInfo);
    var follow = function (id) {
      var link = document.getElementById(id);
      if (link) { window.location.href = link.href; }
    };
    document.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey || event.target.tagName === "INPUT") { return; }
      if (event.key === "ArrowLeft") { follow("prev"); }
      else if (event.key === "ArrowRight") { follow("next"); }
      else if (event.key === "Escape") { follow("back"); }
      else if (event.key === "i" || event.key === "I") { toggleInfo(); }
      else { return; }
      event.preventDefault();
    });
    var boxes = document.getElementById("toggle-boxes");
    if (boxes) {
      boxes.addEventListener("change", function () { body.classList.toggle("show-boxes", boxes.checked); });
    }
    return;
  }

  // Timeline: the next page is fetched and appended as the "older" link comes into view.
  var more = document.getElementById("more");
  var timeline = document.getElementById("timeline");
  if (more && timeline && "IntersectionObserver" in window) {
    var loading = false;
    var observer = new IntersectionObserver(function (entries) {
      var link = more.querySelector("a[rel=next]");
      if (!entries[0].isIntersecting || loading || !link) { return; }
      loading = true;
      fetch(link.href, { credentials: "same-origin" }).then(function (response) {
        return response.ok ? response.text() : Promise.reject(response.status);
      }).then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        page.querySelectorAll("#timeline > section.month").forEach(function (month) {
          var last = timeline.querySelector("section.month:last-of-type");
          if (last && last.dataset.month === month.dataset.month) {
            month.querySelectorAll("section.day").forEach(function (day) {
              var lastDay = last.querySelector("section.day:last-of-type");
              if (lastDay && lastDay.dataset.day === day.dataset.day) {
                var grid = lastDay.querySelector("ul.jgrid");
                day.querySelectorAll("ul.jgrid > li").forEach(function (tile) { grid.appendChild(tile); });
              } else { last.appendChild(document.adoptNode(day)); }
            });
          } else { timeline.appendChild(document.adoptNode(month)); }
        });
        var next = page.getElementById("more");
        more.innerHTML = next ? next.innerHTML : "";
        loading = false;
      }).catch(function () { loading = false; observer.disconnect(); });
    }, { rootMargin: "800px" });
    observer.observe(more);
  }

  // Map: drag a rectangle to zoom into it.
  var map = document.getElementById("map");
  var drag = document.getElementById("drag");
  if (map && drag && map.createSVGPoint) {
    var start = null;
    var point = function (event) {
      var p = map.createSVGPoint();
      p.x = event.clientX; p.y = event.clientY;
      return p.matrixTransform(map.getScreenCTM().inverse());
    };
    var toDegrees = function (x, y) {
      var lon = x / 1000 * 360 - 180;
      var lat = Math.atan(Math.sinh(Math.PI * (1 - 2 * y / 1000))) * 180 / Math.PI;
      return [lon, lat];
    };
    map.addEventListener("pointerdown", function (event) {
      if (event.target.closest("a")) { return; }
      start = point(event);
      map.setPointerCapture(event.pointerId);
    });
    map.addEventListener("pointermove", function (event) {
      if (!start) { return; }
      var p = point(event);
      drag.setAttribute("x", Math.min(start.x, p.x)); drag.setAttribute("y", Math.min(start.y, p.y));
      drag.setAttribute("width", Math.abs(p.x - start.x)); drag.setAttribute("height", Math.abs(p.y - start.y));
    });
    map.addEventListener("pointerup", function (event) {
      if (!start) { return; }
      var p = point(event);
      var a = toDegrees(Math.min(start.x, p.x), Math.max(start.y, p.y));
      var b = toDegrees(Math.max(start.x, p.x), Math.min(start.y, p.y));
      start = null;
      if (Math.abs(b[0] - a[0]) < 1e-4 || Math.abs(b[1] - a[1]) < 1e-4) { return; }
      window.location.href = "/map?box=" + [a[0], a[1], b[0], b[1]].map(function (v) { return v.toFixed(5); }).join(",");
    });
  }

  // Search page: a changed ranking mode or filter checkbox submits the form at once.
  var form = document.querySelector("form.search");
  if (form) {
    form.querySelectorAll("input[type=radio], input[type=checkbox]").forEach(function (input) {
      input.addEventListener("change", function () { form.requestSubmit(); });
    });
  }

  // People: the merge button says how many people are selected.
  var merge = document.getElementById("merge-button");
  if (merge) {
    var boxes2 = document.querySelectorAll("input[name=ids][form=merge]");
    var update = function () {
      var n = 0;
      boxes2.forEach(function (box) {
        n += box.checked ? 1 : 0;
        box.closest(".person").classList.toggle("selected", box.checked);
      });
      merge.disabled = n < 2;
      merge.textContent = n < 2 ? "Select two or more people to merge" : "Merge the " + n + " selected people";
    };
    boxes2.forEach(function (box) { box.addEventListener("change", update); });
    update();
  }
})();
