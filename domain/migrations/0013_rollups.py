from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0012_payment_outcome_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DeviceDay',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField()),
                ('device_id', fields.CharField(max_length=64)),
                ('day', fields.DateField()),
                ('metric', fields.CharField(max_length=48)),
                ('n', fields.IntField()),
                ('vmin', fields.FloatField()),
                ('vmax', fields.FloatField()),
                ('vsum', fields.FloatField()),
                ('vlast', fields.FloatField(null=True)),
            ],
            options={'table': 'device_day', 'app': 'models', 'unique_together': (('device_id', 'day', 'metric'),), 'indexes': [Index(fields=['cinema_id', 'day'])], 'pk_attr': 'id', 'table_description': "One device's metric over one business day, merged from its minutes (counts and"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FeedbackDay',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField()),
                ('day', fields.DateField()),
                ('film_id', fields.IntField(default=0)),
                ('hall', fields.CharField(default='', max_length=16)),
                ('responses', fields.IntField(default=0)),
                ('stars', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('nps', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('comments', fields.IntField(default=0)),
                ('negative', fields.IntField(default=0)),
                ('categories', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'feedback_day', 'app': 'models', 'unique_together': (('cinema_id', 'day', 'film_id', 'hall'),), 'pk_attr': 'id', 'table_description': 'Ratings of one cinema day, one film and one hall (film 0 / hall "" when unknown).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ServiceDay',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('cinema_id', fields.IntField()),
                ('day', fields.DateField()),
                ('kind', fields.CharField(max_length=16)),
                ('team', fields.CharField(max_length=16)),
                ('category', fields.CharField(max_length=16)),
                ('opened', fields.IntField(default=0)),
                ('acknowledged', fields.IntField(default=0)),
                ('resolved', fields.IntField(default=0)),
                ('breached', fields.IntField(default=0)),
                ('ack_seconds', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('resolve_seconds', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('breaches', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'service_day', 'app': 'models', 'unique_together': (('cinema_id', 'day', 'kind', 'team', 'category'),), 'pk_attr': 'id', 'table_description': 'Work orders opened on one cinema day, of one kind, team and category.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ShowSales',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('showtime_id', fields.IntField(unique=True)),
                ('cinema_id', fields.IntField()),
                ('day', fields.DateField()),
                ('film_id', fields.IntField()),
                ('hall_id', fields.IntField()),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('capacity', fields.IntField()),
                ('sold', fields.IntField(default=0)),
                ('revenue_fen', fields.BigIntField(default=0)),
                ('orders', fields.IntField(default=0)),
                ('refunded', fields.IntField(default=0)),
                ('refunded_fen', fields.BigIntField(default=0)),
                ('changed', fields.IntField(default=0)),
                ('checked_in', fields.IntField(default=0)),
                ('updated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'show_sales', 'app': 'models', 'indexes': [Index(fields=['cinema_id', 'day'])], 'pk_attr': 'id', 'table_description': "One show's sales as they stand: box office counts by the show's day."},
            bases=['Model'],
        ),
    ]
