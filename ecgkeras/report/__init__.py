"""Tables, figures, the summary folder and the HTML site of a study."""
