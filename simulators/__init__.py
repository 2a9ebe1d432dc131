"""Store layouts, customers, radio and foot traffic; trace writing; ground truth.

Never imported by production code: the command line composes it with the edge agent.
"""
