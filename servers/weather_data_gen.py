"""The old home of the example-weather generator, now :mod:`sisock.demo.weather`.

Kept so that code importing ``sisock.servers.weather_data_gen`` and
``python -m sisock.servers.weather_data_gen`` go on working.
"""

from sisock.demo.weather import DEFAULT_OUT, END, SEED, SPIKES, START, generate, main, render, series

__all__ = ["DEFAULT_OUT", "END", "SEED", "SPIKES", "START", "generate", "main", "render", "series"]

if __name__ == "__main__":
    raise SystemExit(main())
