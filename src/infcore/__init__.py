"""infcore: influence methods and the experiments of *Revisiting Methods for Finding Influential
Examples* (Karthikeyan K and Søgaard, AAAI 2022)."""

__version__ = "0.1.0"
