"""Post-training quantization of recurrent models: simulated per module, and exported to real INT8/FP16.

* :class:`PostTrainLinearQuantizer` (registered for a schedule's ``quantizers:`` section) simulates integer
  and FP16 arithmetic module by module, with Distiller's options and overrides;
* :func:`collect_activation_stats`, :func:`save_stats`, :func:`load_stats`: calibration statistics in
  Distiller's YAML layout (sample-weighted averages);
* :func:`export_model`, :func:`save_quantized`, :func:`load_quantized`: a real compressed model (int8/fp16
  weights, fast CPU kernels);
* :func:`quant_table`, :func:`ptq_table`: reports.
"""
from compress.quantization.export import (
                                          QuantizedEmbedding,
                                          QuantizedGRU,
                                          QuantizedLinear,
                                          QuantizedLSTM,
                                          WeightFormat,
                                          export_model,
                                          kernels_available,
                                          load_quantized,
                                          save_quantized,
)
from compress.quantization.linear import (
                                          ClipMode,
                                          LinearQuantMode,
                                          ModuleQuantMode,
                                          QuantParams,
                                          asymmetric_params,
                                          clip_range,
                                          dequantize,
                                          fake_quantize,
                                          quant_params,
                                          quantize,
                                          quantized_range,
                                          symmetric_params,
)
from compress.quantization.ptq import ModuleQuantConfig, PostTrainLinearQuantizer
from compress.quantization.report import ptq_table, quant_table
from compress.quantization.stats import (
                                          ActivationStatsCollector,
                                          collect_activation_stats,
                                          load_stats,
                                          run_calibration,
                                          save_stats,
                                          validate_stats,
)

__all__ = [
    "PostTrainLinearQuantizer", "ModuleQuantConfig", "LinearQuantMode", "ClipMode", "ModuleQuantMode", "QuantParams",
    "symmetric_params", "asymmetric_params", "quant_params", "clip_range", "quantize", "dequantize", "fake_quantize",
    "quantized_range", "ActivationStatsCollector", "collect_activation_stats", "run_calibration", "save_stats",
    "load_stats", "validate_stats", "WeightFormat", "QuantizedLinear", "QuantizedEmbedding", "QuantizedLSTM",
    "QuantizedGRU", "export_model", "save_quantized", "load_quantized", "kernels_available", "quant_table",
    "ptq_table",
]
