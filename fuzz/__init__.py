"""Hostile input for the intake: the shapes of issue 16 (`fuzz.hostile`), and fuzz targets for the MIME parse
stage, the classifier and each extractor (`fuzz.targets`, run by `python -m fuzz`). Not installed."""
