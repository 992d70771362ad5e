"""The search side: the Tantivy index, queries, query input checks, export and status."""
