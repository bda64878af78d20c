"""Building blocks that make recurrent models quantizable: element-wise modules and modular LSTM/GRU."""
from compress.modules.eltwise import EltwiseAdd, EltwiseMult, EltwiseSub
from compress.modules.rnn import (
                                  ModularGRU,
                                  ModularGRUCell,
                                  ModularLSTM,
                                  ModularLSTMCell,
                                  convert_from_modular,
                                  convert_to_modular,
                                  converted_module_names,
)

__all__ = ["EltwiseAdd", "EltwiseMult", "EltwiseSub", "ModularLSTM", "ModularLSTMCell", "ModularGRU",
           "ModularGRUCell", "convert_to_modular", "convert_from_modular", "converted_module_names"]
