"""Layer 6, plotting: matplotlib figures of embeddings and posteriors, and the Bokeh explorer HTML."""
