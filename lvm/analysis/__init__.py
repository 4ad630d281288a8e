"""Layer 5, analysis: the posterior landscape (aggregated posterior, modes, Jacobian norms), the embedding table
with its provenance, and the trust diagnostics (consistency, decodability, clusters, and whether a conditional model
uses its covariates). Plain functions of a trained model and its data."""
