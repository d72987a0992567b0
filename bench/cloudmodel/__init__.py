"""The cloud model's services: a virtual clock, DynamoDB, SQS with its event source mapping, API Gateway.

Used by ``bench/bench_cloud_model.py``. Our real handler code runs unchanged
against these services; only time, capacity, latency and the services' own
delivery behaviour are modelled (each module says with which figures).
"""
