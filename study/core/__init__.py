"""The science, pure PyTorch/NumPy (no Ray, MLflow or files but the chaos data cache).

tasks/ (working memory, chaos separation), networks (leaky RNN, GRU), partition (subgroup
labels), optim (replica optimisers), mi/ (critic, estimators, penalty, measurement),
modularity, specialization, scores, communities (Leiden); _checks holds the argument checks
they share.
"""
