"""Web framework hooks, one module per framework, each imported only when used."""
