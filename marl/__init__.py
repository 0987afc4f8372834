"""Multi-agent RL: environments, MATRPO and baselines composed from consensus_admm and trpo_core."""

__all__: list[str] = []
