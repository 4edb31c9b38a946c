"""The S3 sink: record formats, partitioners, object names and the per-partition file writer."""
