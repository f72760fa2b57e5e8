"""Great Expectations suites, shipped inside the wheel; read them through precast.resources."""
