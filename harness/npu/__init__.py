"""NPU knowledge: version probes and matrices, .rknn files, runners, goldens, latency, diagnoses."""
