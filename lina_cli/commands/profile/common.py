"""What both profile reports share: numbers with SI prefixes."""


def si_format(value: float, unit: str) -> str:
    """4 significant digits with an SI prefix and the unit: 36238786560, 'MAC' → '36.24 GMAC'."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}".rstrip()
    return f"{value:.4g} {unit}".rstrip()
