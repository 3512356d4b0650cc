"""Agent processes: thin asyncio drivers around the sans-I/O protocol core (agents.mip).

``testbed agent ha|fa|mn --config FILE`` runs one agent in the current network namespace.
"""
