"""User studies: people co-write documents with the systems under test, blind and balanced.

``collabrl study invite`` creates participant links, ``collabrl study serve`` runs the web app
(``app.create_app``), ``collabrl study analyze`` computes the statistics and plots. The modules,
in the order a request meets them: ``config`` (the YAML), ``assignment`` (who gets which system,
in which order, on which task), ``db`` and ``store`` (every message and rating, stored when sent),
``security`` (tokens, CSRF, limits, headers), ``chat`` (systems and streamed replies),
``participant`` and ``admin`` (the pages), ``export`` and ``analyze`` (the data and its numbers).
Needs the ``study`` extra (FastAPI, uvicorn, SQLAlchemy, python-multipart, matplotlib).
"""
