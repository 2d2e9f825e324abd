"""Video in: arguments to inputs (``sources``), frames on a time grid (``decode``, ``timegrid``, ``spans``
for parts of one long file), the part of the frame each camera counts (``cameras``), and each event's
clip and thumbnail cut from the recording (``media``).  The first stage of the flow: it imports no
other stage."""
