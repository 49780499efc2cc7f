"""Reference catalogs: local files (``local``), column recognition (``columns``), filter to
band mapping (``filters``), online VizieR providers (``vizier``, ``registry``), the on-disk
HEALPix cache (``cache``, ``cached``) and the helpers the CLI calls (``service``).

Import the submodules directly; online parts need the ``online`` extra (astroquery,
astropy-healpix), which is imported only when used.
"""
