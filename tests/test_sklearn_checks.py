"""scikit-learn's own estimator checks on every flatgen classifier."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from flatgen import PoisonedCNNClassifier, PoisonedMLPClassifier

# Short schedules keep the ~50 checks per estimator fast; one instance of each
# trains with the poison term on, so the poisoned code path is checked too.
# The final polish is capped at 50 steps: the checks' data do not all fit a
# tiny net, and the default 1,000 polish steps per fit made the CNN checks
# ~70 % of this file's time.
SHORT = {"max_polish_iter": 50}
ESTIMATORS = [
    PoisonedMLPClassifier(hidden_layer_sizes=(16, 16), max_iter=200, **SHORT),
    PoisonedMLPClassifier(
        hidden_layer_sizes=(16, 16), max_iter=200, poison_factor=0.1, **SHORT
    ),
    PoisonedCNNClassifier(
        conv_channels=(4,), hidden_layer_sizes=(16,), max_iter=100, **SHORT
    ),
    PoisonedCNNClassifier(
        conv_channels=(4,),
        hidden_layer_sizes=(16,),
        max_iter=100,
        poison_factor=0.1,
        **SHORT,
    ),
]


def expected_failed_checks(estimator):
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
