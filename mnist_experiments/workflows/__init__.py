"""Workflows: a single run, k-fold, sweep leaderboards, reproduce, evaluate, predict.

Heavy: they orchestrate the heavy sub-packages. Commands import them lazily.
"""
