"""Audio/video I/O, the model pool and the engines. Knows nothing of tenants, billing or HTTP."""
