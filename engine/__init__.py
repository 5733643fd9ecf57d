"""servegauge's engine: the command line, the coordinator, the workers, the
result store and the built-in mock server."""


def installed_version() -> str:
    """servegauge's version as installed (the run table records it; a Ray
    node on another version is warned about), "0+unknown" from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("servegauge")
    except PackageNotFoundError:
        return "0+unknown"
