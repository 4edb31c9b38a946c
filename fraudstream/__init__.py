"""fraudstream: the ground every layer stands on, and the roof over them.

Ground: addresses (`config`), Kafka client defaults and helpers (`kafka`), object storage (`s3`), the
shared contracts (`topics`, `wire`, `statements`) and the terminal. Roof: the command line (`cli`), the
demo and its live view, and the benchmarks (`bench`).
"""
