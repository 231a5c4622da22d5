"""`isotune publish`: a run folder's model, model card and plots, staged locally and committed to the Hugging Face Hub.

Modules: `run_folder` reads the run, `files` lists and stages what is uploaded, `sources` finds the base model
and datasets, `metadata` builds and validates the card's YAML, `tables` and `card` write the card, `upload`
talks to the Hub and `workflow` ties them together.
"""
