"""One module per wire protocol; the engine knows them only through :mod:`.base`."""
