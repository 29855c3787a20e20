"""A seeded soak on Kafka (`./dev soak --seed N --minutes M`): not part of the default suite."""
