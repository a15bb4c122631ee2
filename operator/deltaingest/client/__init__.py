"""The producer's side of the writer's contract: send batches exactly once, resume after a crash.

from deltaingest.client import Producer

with Producer(["http://writer-0:8080", "http://writer-1:8080"], "orders-loader") as producer:
    ack = producer.send([{"id": 1, "kind": "click"}])
"""

from deltaingest.client.delivery import ClientError, DeliveryFailed, Rejected, RetryPolicy
from deltaingest.client.producer import Ack, AsyncProducer, Producer, ProducerFailed, SequenceTaken

__all__ = [
    "Ack",
    "AsyncProducer",
    "ClientError",
    "DeliveryFailed",
    "Producer",
    "ProducerFailed",
    "Rejected",
    "RetryPolicy",
    "SequenceTaken",
]
