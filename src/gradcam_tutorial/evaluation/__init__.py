"""Evaluation: numbers that say whether a heatmap tells the truth about the model.

Built on the core package and never imported by it. The measures, one module each: ``baselines``
(maps every method must beat), ``faithfulness`` (deletion, insertion, Average Drop), ``road``
(removal without grey pixels, imputed with SciPy), ``localisation`` (maps against boxes),
``sanity`` (map similarity under weight randomisation), ``saliency`` (gradient and Guided
Backprop, the sanity check's contrasts), ``stats`` (bootstrap intervals), ``peers`` (other
libraries' Grad-CAM, ``[evaluation]`` extra) and ``cost`` (timings). The report's runs of them, each
runner with its summary and figure: ``accuracy``, ``run_localisation``, ``run_sanity``,
``run_faithfulness`` and ``variants`` (Grad-CAM's variants paired with it), on photos chosen by
``shared``; ``report`` orchestrates the full run (``make report-full``) and records its provenance.
"""
