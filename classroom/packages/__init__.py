"""Course packages (课程包): a unit, a course or chosen lectures written as a
folder, ZIP file or ISO image with a manifest and an offline player, and
imported, verified file by file, into another server's archive."""
