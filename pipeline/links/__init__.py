"""The links stage: Reddit submissions -> unique, normalized, host-partitioned URLs."""
