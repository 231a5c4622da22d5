"""`isotune publish`: a run folder's model, model card and plots, staged locally and committed to the Hugging Face Hub.

`run_folder` reads the run and `files` lists and stages what is uploaded. `sources` finds the base model and
datasets, `metadata` builds and validates the card's YAML, and `tables` and `card` write the card. `upload`
sends the commit to the Hub, and `workflow` runs these steps in order.
"""
