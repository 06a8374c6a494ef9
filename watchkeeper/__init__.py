"""watchkeeper: monitoring and alerting for machine-learning models in production.

Model services need only `Monitor`; importing this package stays light (no pandas, scipy or
streamlit) so that it costs a service almost nothing at start-up.
"""

from watchkeeper.collectors.client import Monitor

__all__ = ["Monitor", "__version__"]
__version__ = "0.1.0"
