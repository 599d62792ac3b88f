"""byhand's machinery: the op registry, devices and dtypes, the tolerance policy, comparison records,
and the ``byhand`` command. Everything here iterates :data:`checks.registry.REGISTRY`."""
