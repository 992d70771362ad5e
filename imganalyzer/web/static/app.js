// imganalyzer serve: the only script. Pages work without it; it adds small conveniences.
(function () {
  "use strict";
  // Image page: show or hide the object and face boxes.
  var toggle = document.getElementById("toggle-boxes");
  var picture = document.getElementById("picture");
  if (toggle && picture) {
    toggle.addEventListener("change", function () {
      picture.parentNode.classList.toggle("hide-boxes", !toggle.checked);
    });
  }
  // Search page: a changed ranking mode or filter checkbox submits the form at once.
  var form = document.querySelector("form.search");
  if (form) {
    form.querySelectorAll("input[type=radio], input[type=checkbox]").forEach(function (input) {
      input.addEventListener("change", function () { form.requestSubmit(); });
    });
  }
})();
