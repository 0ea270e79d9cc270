"""cbp_jax: private customization of black-box LLMs (CBP-Tuning, POST, RAPT, BBT) in JAX."""
