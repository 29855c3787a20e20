"""The contract on the bus: event and command models, envelope, topics, codec. No I/O."""
