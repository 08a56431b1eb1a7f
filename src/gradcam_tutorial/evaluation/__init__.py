"""Evaluation: numbers that say whether a heatmap tells the truth about the model.

Built on the core package and never imported by it. Modules by concern: ``baselines`` (maps every
method must beat), ``faithfulness`` (deletion, insertion, Average Drop), ``road`` (removal without
grey pixels), ``localisation`` (maps against boxes), ``sanity`` (map similarity under weight
randomisation), ``saliency`` (gradient and Guided Backprop, the sanity check's contrasts),
``stats`` (bootstrap intervals), ``peers`` (other libraries' Grad-CAM, ``[evaluation]`` extra),
``cost`` (timings and forward-pass budgets) and ``report`` (the report's runs and figures).
"""
