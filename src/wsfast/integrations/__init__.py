"""wsfast inside other WebSocket libraries.

:mod:`wsfast.integrations.accelerate` swaps the masking, UTF-8 and parsing
hot spots of websockets, wsproto, tornado, websocket-client, Autobahn and
ws4py for wsfast's codec, where each library looks them up, and puts the
originals back on demand::

    import wsfast

    wsfast.accelerate()      # every supported library that is installed
    wsfast.unaccelerate()    # the originals, exactly

The replacements themselves are in :mod:`wsfast.integrations._targets`.
"""
