"""The bare four-stage baseline chain the pipeline's throughput is measured against."""
