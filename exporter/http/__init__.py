"""At the ground: the HTTP client every scrape uses (``fetch``) and the Prometheus text-format parser
(``textformat``), shared by the node sources, the engines and the what-if commands."""
