"""SQL files, shipped inside the wheel; read them through precast.resources."""
