"""Layer 2, estimators: randomized-QMC (eq. 5 of the QLVM paper), importance sampling, defensive importance
sampling and the held-out metric. Functions of tensors and callables (the decoder's log-likelihood, the prior's
density, a proposal's draws); they import numerics and components, never the model."""
