"""Weight averaging during training: airbench's lookahead EMA, as a Keras callback.

Every few steps the weights are pulled into an exponential moving average and the model
continues from that average (the Lookahead optimizer's "slow weights"). The averaging
starts late and grows stronger as training ends (decay ``base ** every x fraction ** 3``),
so early training moves fast and the last epochs are averaged hard, which is worth a
fraction of a point of accuracy for free on short schedules (Jordan 2024, airbench94).
"""

from collections.abc import Callable
from typing import Any

from .backend import keras_module, tensorflow_module


def lookahead_callback(model: Any, fraction_done: Callable[[], float], *, every: int = 5,
                       decay_base: float = 0.95, decay_power: float = 3.0, start: float = 0.3) -> Any:
    """A Keras callback averaging ``model``'s float weights (BatchNorm statistics too).

    Args:
        model: The Keras model being fitted.
        fraction_done: A callable giving how much of training is done (0-1), the same
            clock the learning-rate schedule uses (epochs or a time budget).
        every: Steps between averaging.
        decay_base: Per-step decay of the average; an averaging step uses
            ``decay_base ** every * fraction_done ** decay_power``.
        decay_power: How fast the averaging grows stronger as training ends.
        start: Fraction of training after which averaging begins.

    Returns:
        A ``keras.callbacks.Callback`` to pass to ``fit()``.
    """
    callback_class: Any = keras_module().callbacks.Callback
    tf = tensorflow_module()
    variables = [v for v in model.weights if "float" in str(v.dtype)]

    class Lookahead(callback_class):
        def __init__(self):
            super().__init__()
            self.steps = 0
            self.average: list[Any] | None = None
            self._update: Any = None

        def _pull(self, decay):
            if self.average is None:
                averages = self.average = [tf.Variable(tf.identity(v.value), trainable=False) for v in variables]

                @tf.function
                def update(decay):
                    for variable, average in zip(variables, averages):
                        average.assign(average + (1.0 - decay) * (variable.value - average))
                        variable.assign(average)

                self._update = update
                return
            self._update(tf.constant(decay, tf.float32))

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            fraction = fraction_done()
            if fraction < start or self.steps % every:
                return
            self._pull(decay_base ** every * min(1.0, fraction) ** decay_power)

        def _copy_back(self):
            # Evaluate and keep the averaged weights, not those of the last few steps.
            if self.average is not None:
                self._update(tf.constant(1.0, tf.float32))

        def on_test_begin(self, logs=None):
            self._copy_back()

        def on_epoch_end(self, epoch, logs=None):
            self._copy_back()

    return Lookahead()
