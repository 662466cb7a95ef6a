"""Comparisons + annotators → group-labelled preference pairs, chosen in configuration, not code.

A comparisons table (prompt, responses shown, what an annotator preferred, the annotator's id) is joined with an
annotators table (one row per annotator, with attributes) on the annotator id; each judgement's group is one attribute
or a combination of several, and the preferences become the pairs (prompt, chosen, rejected, group) that
:class:`~grpo_lightning.data.module.PreferenceDataModule` trains on, with every skipped row counted.

Modules: ``settings`` (what a recipe sets), ``tables`` (reading tables and values), ``judgements`` (one row's
preferences, per layout), ``ledger`` (the skip reasons and their counts), ``groups`` (annotator groups, small groups),
``pairs`` (:func:`~.pairs.build_pairs`), ``module`` (:class:`~.module.ComparisonsDataModule`). Recipes for public
datasets are YAML only (``configs/data/*.yaml``); ``docs/own_data.md`` walks through one and through writing your own.
"""
