"""What a producer runs against any Kafka: the payment record, file replay, the generator, the card holders."""
