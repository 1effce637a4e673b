"""The operator's controllers (kopf handlers). Importing this package registers them."""

import importlib
import importlib.util

from tuneline.controllers import finetunejob  # noqa: F401  (registers the FineTuneJob handlers)

# the ModelDeployment controller lives beside this one once it exists
if importlib.util.find_spec("tuneline.controllers.modeldeployment") is not None:
    importlib.import_module("tuneline.controllers.modeldeployment")
