"""The review station application: services (Qt-free), worker, GUI."""
import inference  # noqa: F401 - sets OpenCV's pixel guard before any module of the application imports cv2

__version__ = "0.1.0"
