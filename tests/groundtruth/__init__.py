"""Ground-truth scenarios: simulated inference servers, what they served, and an ideal scraper.

* ``engines/``: one model per server (vLLM V1 and V0, SGLang 0.5 and 0.4, TGI, Triton with
  TRT-LLM ≥ 0.16 and r24.12 + 0.15, llama.cpp), each rendering its real exposition format.
* ``world.py``: engine instances with lives (restarts), traffic, and per scrape the answer
  chosen (good, failed, faulty); it records what each scrape served (``record.py``).
* ``server.py``: one loopback HTTP server answering for every instance.
* ``ideal.py``: replays the record as an ideal scraper would; ``truth.py`` adds what no
  scraper could see.
* ``exporter_run.py`` drives the exporter's public path over HTTP; ``compare.py`` lists every
  difference; ``scenario.py`` builds seeded random worlds.
"""
