"""The generator of the synthetic Kestrel & Co. dialogues in ``data/`` (``scripts/make_support_data.py`` is its
command line): ``company`` reads ``data/company.yaml``; ``phrases`` holds the shared slot values and phrasings;
``dialogue`` builds one conversation; ``intents`` writes one dialogue per intent; ``generate`` makes, checks and
writes the splits; ``readme`` writes ``data/README.md``."""
