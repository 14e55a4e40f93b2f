"""Fakes of outside services that the tests and benchmarks talk to over real sockets."""
