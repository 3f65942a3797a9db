"""The model file of the registered model (MLflow "models from code"): loading the model runs it.

Why a file instead of `python_model=SayoVisionQA()`: MLflow pickles a Python object with
cloudpickle, and unpickling runs whatever code the pickle names; a model file is plain source,
stored as text among the model's artifacts, readable before anything is loaded, and it names the
class through an import of the pinned `sayo` instead of a byte copy of it. The checkpoint travels
as the `checkpoint` artifact and the settings as `model_config` (`sayo.registry.register`).

MLflow executes this file when the model is logged (to check it) and when it is loaded; it must
end in `set_model` and do nothing else.
"""

from mlflow.models import set_model

from sayo.registry.model import SayoVisionQA

set_model(SayoVisionQA())
