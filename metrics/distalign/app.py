import evaluate
from evaluate.utils import launch_gradio_widget

if __name__ == "__main__":  # a Space runs this file; pytest only imports it for doctests
    launch_gradio_widget(evaluate.load("distalign/distalign"))
